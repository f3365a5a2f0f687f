// nnfuse._cuda: the CUDA extension (built when nvcc is found). The CUDA
// runtime is linked statically, so importing it works without a GPU or driver;
// device_count() is then 0.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/cpu_api.h"

namespace nnfuse {
namespace isa_cuda {
cudaError_t cuda_activation_f32(ActOp op, ActDirection direction, const float* in, const float* grad, float* out,
                                int64_t n, float p0, float p1, cudaStream_t stream);
}
}  // namespace nnfuse

namespace py = pybind11;

namespace {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" / "no device" error
    return 0;
  }
  return count;
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "nnfuse CUDA kernels";
  m.attr("architectures") = NNF_CUDA_ARCHS;
  m.attr("cuda_runtime_version") = CUDART_VERSION;
  m.def("device_count", &device_count);
  m.def(
      "activation_f32",
      [](int op, int direction, uintptr_t in, uintptr_t grad, uintptr_t out, int64_t n, float p0, float p1,
         uintptr_t stream) {
        py::gil_scoped_release release;
        check(nnfuse::isa_cuda::cuda_activation_f32(
                  static_cast<nnfuse::ActOp>(op), static_cast<nnfuse::ActDirection>(direction),
                  reinterpret_cast<const float*>(in), reinterpret_cast<const float*>(grad),
                  reinterpret_cast<float*>(out), n, p0, p1, reinterpret_cast<cudaStream_t>(stream)),
              "activation_f32");
      },
      py::arg("op"), py::arg("direction"), py::arg("input"), py::arg("grad"), py::arg("out"), py::arg("n"),
      py::arg("p0"), py::arg("p1"), py::arg("stream"));
}
