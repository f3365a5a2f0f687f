// nnfuse._cuda: the CUDA extension (built when nvcc is found). Thin: device
// pointers, sizes, dtype codes, the caller's stream and device in; no math and
// no synchronisation here. The CUDA runtime is linked statically, so importing
// this module works without a GPU or driver; device_count() is then 0.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_api.h"

namespace py = pybind11;
using namespace nnfuse;

namespace {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the "no driver" / "no device" error
    return 0;
  }
  return count;
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw std::runtime_error(std::string("nnfuse CUDA ") + what + ": " + cudaGetErrorName(status) + " (" +
                             cudaGetErrorString(status) + ")");
  }
}

int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

// Makes `device` current for the scope (the arrays' device), restoring the
// caller's device afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) {
      check(cudaSetDevice(device), "cudaSetDevice");
    } else {
      previous_ = -1;
    }
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

template <class T = void>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}
cudaStream_t as_stream(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

// The device that owns a pointer (for bare __cuda_array_interface__ objects,
// which do not say).
int pointer_device(uintptr_t address) {
  cudaPointerAttributes attributes{};
  check(cudaPointerGetAttributes(&attributes, ptr(address)), "cudaPointerGetAttributes");
  if (attributes.type == cudaMemoryTypeUnregistered)
    throw std::invalid_argument("the pointer of a __cuda_array_interface__ object is not CUDA memory");
  return attributes.device;
}

void activation(int op, int direction, int dtype, uintptr_t in, uintptr_t grad, uintptr_t out, int64_t n, double p0,
                double p1, uintptr_t stream, int device) {
  if (op < 0 || op >= static_cast<int>(ActOp::count)) throw std::invalid_argument("activation: bad op code");
  py::gil_scoped_release release;
  DeviceScope scope(device);
  check(cuda::activation(static_cast<ActOp>(op), static_cast<ActDirection>(direction), static_cast<DType>(dtype),
                         ptr(in), ptr(grad), ptr(out), n, p0, p1, as_stream(stream)),
        "activation launch");
}

void prelu_forward(int dtype, uintptr_t x, uintptr_t weight, uintptr_t out, int64_t total, int64_t channels,
                   int64_t inner, uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceScope scope(device);
  check(cuda::prelu_forward(static_cast<DType>(dtype), ptr(x), ptr(weight), ptr(out), total, channels, inner,
                            as_stream(stream)),
        "prelu_forward launch");
}

void prelu_backward(int dtype, uintptr_t grad, uintptr_t x, uintptr_t weight, uintptr_t grad_x,
                    uintptr_t weight_grad, uintptr_t partials, int64_t total, int64_t channels, int64_t inner,
                    uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceScope scope(device);
  check(cuda::prelu_backward(static_cast<DType>(dtype), ptr(grad), ptr(x), ptr(weight), ptr(grad_x),
                             ptr(weight_grad), ptr<double>(partials), total, channels, inner, as_stream(stream)),
        "prelu_backward launch");
}

void rrelu_training(int dtype, uintptr_t x, uintptr_t grad, uintptr_t out, int64_t n, double lower, double upper,
                    uint64_t seed, uint64_t offset, uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceScope scope(device);
  check(cuda::rrelu_training(static_cast<DType>(dtype), ptr(x), ptr(grad), ptr(out), n, lower, upper, seed, offset,
                             as_stream(stream)),
        "rrelu_training launch");
}

// ---- optimizers ----------------------------------------------------------------
// The Python layer (nnfuse/optim/_device.py) has checked every array and packs
// the pointers into an (n, 6) int64 table: param, grad, state 0..2, master (0:
// unused). Everything is queued on `stream`; nothing is read back.

std::vector<cuda::CudaOptimTensor> optim_tensors(const py::array_t<int64_t, py::array::c_style>& table,
                                                 const py::array_t<int64_t, py::array::c_style>& sizes) {
  if (table.ndim() != 2 || table.shape(1) != 6 || sizes.ndim() != 1 || sizes.shape(0) != table.shape(0))
    throw std::invalid_argument("optim: pointer table must be (n, 6) and sizes (n,)");
  const int64_t n = sizes.shape(0);
  std::vector<cuda::CudaOptimTensor> tensors(static_cast<size_t>(n));
  auto t = table.unchecked<2>();
  auto z = sizes.unchecked<1>();
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 6; ++k) tensors[static_cast<size_t>(i)].ptr[k] = ptr(static_cast<uintptr_t>(t(i, k)));
    tensors[static_cast<size_t>(i)].n = z(i);
  }
  return tensors;
}

int64_t optim_workspace_doubles(const py::array_t<int64_t, py::array::c_style>& sizes) {
  return cuda::optim_workspace_doubles(sizes.data(), sizes.size());
}

// reduce: None, or a callable taking the workspace's local sum of squares
// (the Python side wraps it as a device scalar) and returning the address of
// the reduced float64 sum on the same device.
void optim_step(int kind, int dtype, const py::array_t<int64_t, py::array::c_style>& table,
                const py::array_t<int64_t, py::array::c_style>& sizes, uint32_t flags, int clip_mode, double clip,
                double clipvalue, int nonfinite, bool keras, bool has_norm_pass, double lr, uintptr_t lr_ptr,
                const std::vector<double>& base, uintptr_t step_ptr, uintptr_t ws, uintptr_t record,
                const py::object& reduce, uintptr_t stream_handle, int device) {
  if (kind < 0 || kind > 3) throw std::invalid_argument("optim_step: bad optimizer kind");
  if (base.size() > 4) throw std::invalid_argument("optim_step: at most 4 base hyper-parameters");
  std::vector<cuda::CudaOptimTensor> tensors = optim_tensors(table, sizes);
  cuda::CudaOptimOptions o{};
  o.kind = kind;
  o.flags = flags;
  o.clip_mode = clip_mode;
  o.nonfinite = nonfinite;
  o.keras = keras;
  o.has_norm_pass = has_norm_pass;
  o.clip = clip;
  o.clipvalue = clipvalue;
  o.lr = lr;
  for (size_t k = 0; k < base.size(); ++k) o.base[k] = base[k];
  const DType dt = static_cast<DType>(dtype);
  cudaStream_t stream = as_stream(stream_handle);
  double* work = ptr<double>(ws);
  DeviceScope scope(device);
  const double* global_sum = nullptr;
  if (has_norm_pass) {
    {
      py::gil_scoped_release release;
      check(cuda::optim_grad_pass(dt, tensors, nonfinite == 1, work, stream), "optim gradient pass launch");
    }
    if (!reduce.is_none()) global_sum = ptr<const double>(reduce().cast<uintptr_t>());
  }
  py::gil_scoped_release release;
  check(cuda::optim_finalize(o, tensors, global_sum, ptr<double>(step_ptr), ptr<const double>(lr_ptr),
                             ptr<double>(record), work, stream),
        "optim finalize launch");
  check(cuda::optim_update(dt, o, tensors, work, stream), "optim update launch");
}

void softmax_forward(bool log, int dtype, uintptr_t x, uintptr_t keep, uintptr_t out, int64_t rows, int64_t cols,
                     double scale, bool masked_rows_nan, uintptr_t workspace, uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceScope scope(device);
  check(cuda::softmax_forward(log, static_cast<DType>(dtype), ptr(x), ptr<const uint8_t>(keep), ptr(out), rows, cols,
                              scale, masked_rows_nan, ptr<double>(workspace), as_stream(stream)),
        "softmax_forward launch");
}

void softmax_backward(bool log, int dtype, uintptr_t grad, uintptr_t y, uintptr_t out, int64_t rows, int64_t cols,
                      double scale, uintptr_t workspace, uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceScope scope(device);
  check(cuda::softmax_backward(log, static_cast<DType>(dtype), ptr(grad), ptr(y), ptr(out), rows, cols, scale,
                               ptr<double>(workspace), as_stream(stream)),
        "softmax_backward launch");
}

// Returns the first row whose label is neither ignore_index nor in [0, cols),
// or -1 (the call waits for the stream).
int64_t cross_entropy(int dtype, uintptr_t logits, uintptr_t labels, uintptr_t grad, uintptr_t loss, int reduction,
                      int64_t rows, int64_t cols, int64_t ignore_index, double smoothing, double z_loss,
                      uintptr_t workspace, uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceScope scope(device);
  int64_t first_bad_row = -1;
  check(cuda::cross_entropy(static_cast<DType>(dtype), ptr(logits), ptr<const int64_t>(labels), ptr(grad), ptr(loss),
                            reduction, rows, cols, ignore_index, smoothing, z_loss, ptr<double>(workspace),
                            as_stream(stream), &first_bad_row),
        "softmax_cross_entropy launch");
  return first_bad_row;
}

// Device memory owned by nnfuse, for results of calls whose inputs came from
// neither CuPy nor PyTorch (a bare __cuda_array_interface__ object).
class Buffer {
 public:
  Buffer(int64_t nbytes, int device) : nbytes_(nbytes), device_(device) {
    if (nbytes < 0) throw std::invalid_argument("Buffer: negative size");
    DeviceScope scope(device);
    check(cudaMalloc(&data_, static_cast<size_t>(nbytes > 0 ? nbytes : 1)), "cudaMalloc");
  }
  ~Buffer() {
    // No exceptions here; cudaFree waits for the device, so no queued kernel
    // can still be using the memory.
    int previous = -1;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) cudaSetDevice(device_);
    cudaFree(data_);
    if (previous >= 0 && previous != device_) cudaSetDevice(previous);
    cudaGetLastError();
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uintptr_t address() const { return reinterpret_cast<uintptr_t>(data_); }
  int64_t nbytes() const { return nbytes_; }
  int device() const { return device_; }

 private:
  void* data_ = nullptr;
  int64_t nbytes_;
  int device_;
};

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "nnfuse CUDA kernels (device pointers in, work queued on the caller's stream)";
  m.attr("architectures") = NNF_CUDA_ARCHS;
  m.attr("cuda_runtime_version") = CUDART_VERSION;
  m.def("device_count", &device_count);
  m.def("current_device", &current_device);
  m.def("pointer_device", &pointer_device, py::arg("address"));
  m.def("activation", &activation, py::arg("op"), py::arg("direction"), py::arg("dtype"), py::arg("input"),
        py::arg("grad"), py::arg("out"), py::arg("n"), py::arg("p0"), py::arg("p1"), py::arg("stream"),
        py::arg("device"));
  m.def("prelu_forward", &prelu_forward, py::arg("dtype"), py::arg("x"), py::arg("weight"), py::arg("out"),
        py::arg("total"), py::arg("channels"), py::arg("inner"), py::arg("stream"), py::arg("device"));
  m.def("prelu_partials_size", &cuda::prelu_partials_size, py::arg("total"), py::arg("channels"));
  m.def("prelu_backward", &prelu_backward, py::arg("dtype"), py::arg("grad"), py::arg("x"), py::arg("weight"),
        py::arg("grad_x"), py::arg("weight_grad"), py::arg("partials"), py::arg("total"), py::arg("channels"),
        py::arg("inner"), py::arg("stream"), py::arg("device"));
  m.def("rrelu_training", &rrelu_training, py::arg("dtype"), py::arg("x"), py::arg("grad"), py::arg("out"),
        py::arg("n"), py::arg("lower"), py::arg("upper"), py::arg("seed"), py::arg("offset"), py::arg("stream"),
        py::arg("device"));
  m.def("optim_workspace_doubles", &optim_workspace_doubles, py::arg("sizes"));
  m.attr("optim_local_sum_index") = cuda::kOptimLocalSumIndex;
  m.def("optim_step", &optim_step, py::arg("kind"), py::arg("dtype"), py::arg("table"), py::arg("sizes"),
        py::arg("flags"), py::arg("clip_mode"), py::arg("clip"), py::arg("clipvalue"), py::arg("nonfinite"),
        py::arg("keras"), py::arg("has_norm_pass"), py::arg("lr"), py::arg("lr_ptr"), py::arg("base"),
        py::arg("step_ptr"), py::arg("ws"), py::arg("record"), py::arg("reduce"), py::arg("stream"),
        py::arg("device"));
  m.def("softmax_workspace_size", &cuda::softmax_workspace_size, py::arg("rows"), py::arg("cols"));
  m.def("cross_entropy_workspace_size", &cuda::cross_entropy_workspace_size, py::arg("rows"), py::arg("cols"));
  m.def("softmax_forward", &softmax_forward, py::arg("log"), py::arg("dtype"), py::arg("x"), py::arg("keep"),
        py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("scale"), py::arg("masked_rows_nan"),
        py::arg("workspace"), py::arg("stream"), py::arg("device"));
  m.def("softmax_backward", &softmax_backward, py::arg("log"), py::arg("dtype"), py::arg("grad"), py::arg("y"),
        py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("scale"), py::arg("workspace"), py::arg("stream"),
        py::arg("device"));
  m.def("softmax_cross_entropy", &cross_entropy, py::arg("dtype"), py::arg("logits"), py::arg("labels"),
        py::arg("grad"), py::arg("loss"), py::arg("reduction"), py::arg("rows"), py::arg("cols"),
        py::arg("ignore_index"), py::arg("smoothing"), py::arg("z_loss"), py::arg("workspace"), py::arg("stream"),
        py::arg("device"));
  py::class_<Buffer>(m, "Buffer")
      .def(py::init<int64_t, int>(), py::arg("nbytes"), py::arg("device"))
      .def_property_readonly("address", &Buffer::address)
      .def_property_readonly("nbytes", &Buffer::nbytes)
      .def_property_readonly("device", &Buffer::device);
}
