// nnfuse._C: the CPU extension. Thin by design: the Python layer validates
// arguments (dtype, shape, out=, overlap) and passes contiguous arrays; the
// feature files in this folder turn them into pointers and sizes, release the
// GIL, and call the dispatched kernels. No math here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/register.h"
#include "cpu/dispatch.h"
#include "cpu/parallel.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "nnfuse CPU kernels (run-time dispatched scalar / AVX2 / AVX-512)";
  m.attr("__version__") = NNF_VERSION;
  m.attr("compiler") = NNF_COMPILER;

  m.def("compiled_isas", &nnfuse::compiled_isas);
  m.def("supported_isas", &nnfuse::supported_isas);
  m.def("current_isa", &nnfuse::current_isa);
  m.def("set_cpu_isa", &nnfuse::set_cpu_isa, py::arg("name"));
  m.def("get_num_threads", &nnfuse::get_num_threads);
  m.def("set_num_threads", &nnfuse::set_num_threads, py::arg("n"));
  m.def("default_num_threads", &nnfuse::default_num_threads);
  m.attr("max_threads") = nnfuse::kMaxThreads;
  m.def("stream_mid_size", &nnfuse::stream_mid_size, py::call_guard<py::gil_scoped_release>());

  nnfuse::register_activations(m);
  nnfuse::register_optim(m);
  nnfuse::register_softmax(m);
}
