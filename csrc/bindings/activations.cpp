// Bindings of the activation kernels: arrays in, pointers and sizes to the
// dispatched kernels, GIL released while they run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/register.h"
#include "cpu/dispatch.h"

namespace py = pybind11;
using namespace nnfuse;
using namespace nnfuse::bindings;

namespace {

void activation(int op, int direction, int dtype, const py::array& in, const py::object& grad, py::array& out,
                double p0, double p1) {
  ActRange r{static_cast<ActOp>(op), static_cast<ActDirection>(direction), static_cast<DType>(dtype),
             data_of(in), grad.is_none() ? nullptr : data_of(grad.cast<py::array>()), mutable_data_of(out), p0, p1};
  int64_t n = static_cast<int64_t>(out.size());
  py::gil_scoped_release release;
  run_activation(r, n);
}

// The common call made cheap: runs the kernel and returns true when every
// array is already in the form the kernels take (C-contiguous, the same dtype
// object and shape as `in`, out writeable and either exactly an input's
// memory or disjoint from every input); otherwise returns false having done
// nothing, and the caller's general path converts or explains. These checks
// in Python (flags objects, np.may_share_memory) cost ~0.6 us per call, more
// than a 16-element kernel.
bool activation_direct(int op, int direction, int dtype, const py::array& in, const py::object& grad, py::array& out,
                       double p0, double p1) {
  if (!same_form(in, in) || !direct_output(out, in) || overlaps_out(in, out)) return false;
  if (!grad.is_none()) {
    if (!py::isinstance<py::array>(grad)) return false;
    py::array g = py::reinterpret_borrow<py::array>(grad);
    if (!same_form(g, in) || overlaps_out(g, out)) return false;
  }
  activation(op, direction, dtype, in, grad, out, p0, p1);
  return true;
}

bool activation_has_bwd_from_y(int op) { return kernels().activation_has_bwd_from_y(static_cast<ActOp>(op)); }

PreluRange prelu_range(int dtype, const py::array& x, const py::object& grad, const py::array& weight,
                       py::array& out, int64_t channels, int64_t inner) {
  PreluRange r{};
  r.dtype = static_cast<DType>(dtype);
  r.total = static_cast<int64_t>(x.size());
  r.x = data_of(x);
  r.grad = grad.is_none() ? nullptr : data_of(grad.cast<py::array>());
  r.weight = data_of(weight);
  r.out = mutable_data_of(out);
  r.channels = channels;
  r.inner = inner;
  return r;
}

void prelu_forward(int dtype, const py::array& x, const py::array& weight, py::array& out, int64_t channels,
                   int64_t inner, int64_t rows) {
  PreluRange r = prelu_range(dtype, x, py::none(), weight, out, channels, inner);
  py::gil_scoped_release release;
  run_prelu_forward(r, rows);
}

py::array_t<double> prelu_backward(int dtype, const py::array& grad, const py::array& x, const py::array& weight,
                                   py::array& grad_x, int64_t channels, int64_t inner, int64_t rows) {
  PreluRange r = prelu_range(dtype, x, grad, weight, grad_x, channels, inner);
  py::array_t<double> weight_grad(channels);
  double* wg = weight_grad.mutable_data();
  {
    py::gil_scoped_release release;
    run_prelu_backward(r, rows, wg);
  }
  return weight_grad;
}

void rrelu_training(int dtype, const py::array& x, const py::object& grad, py::array& out, double lower,
                    double upper, uint64_t seed, uint64_t offset) {
  RreluRange r{static_cast<DType>(dtype), data_of(x), grad.is_none() ? nullptr : data_of(grad.cast<py::array>()),
               mutable_data_of(out), lower, upper, seed, offset};
  int64_t n = static_cast<int64_t>(out.size());
  py::gil_scoped_release release;
  run_rrelu_training(r, n);
}

}  // namespace

void nnfuse::register_activations(py::module_& m) {
  m.def("activation", &activation, py::arg("op"), py::arg("direction"), py::arg("dtype"), py::arg("input"),
        py::arg("grad"), py::arg("out"), py::arg("p0"), py::arg("p1"));
  m.def("activation_direct", &activation_direct, py::arg("op"), py::arg("direction"), py::arg("dtype"),
        py::arg("input"), py::arg("grad"), py::arg("out"), py::arg("p0"), py::arg("p1"));
  m.def("activation_has_bwd_from_y", &activation_has_bwd_from_y, py::arg("op"));
  m.def("prelu_forward", &prelu_forward);
  m.def("prelu_backward", &prelu_backward);
  m.def("rrelu_training", &rrelu_training);
}
