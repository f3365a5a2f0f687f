// Bindings of the softmax kernels: contiguous arrays in (the Python layer has
// validated them and moved the softmax axis last), pointers and sizes to the
// dispatched kernels, GIL released while they run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/register.h"
#include "cpu/softmax_api.h"

namespace py = pybind11;
using namespace nnfuse;

namespace {

const void* data_of(const py::array& a) { return a.data(); }
void* mutable_data_of(py::array& a) { return const_cast<void*>(a.data()); }

void softmax_forward(bool log, int dtype, const py::array& x, const py::object& keep, py::array& out, int64_t rows,
                     int64_t cols, double scale, bool masked_rows_nan) {
  SoftmaxRange r{static_cast<DType>(dtype),
                 log,
                 data_of(x),
                 keep.is_none() ? nullptr : static_cast<const uint8_t*>(data_of(keep.cast<py::array>())),
                 mutable_data_of(out),
                 cols,
                 scale,
                 masked_rows_nan,
                 rows * cols};
  py::gil_scoped_release release;
  run_softmax_forward(r, rows);
}

void softmax_backward(bool log, int dtype, const py::array& grad, const py::array& y, py::array& out, int64_t rows,
                      int64_t cols, double scale) {
  SoftmaxBackwardRange r{static_cast<DType>(dtype), log, data_of(grad), data_of(y), mutable_data_of(out),
                         cols, scale, rows * cols};
  py::gil_scoped_release release;
  run_softmax_backward(r, rows);
}

// Returns (per-row losses as float64, their sum in row order).
py::tuple cross_entropy(int dtype, const py::array& logits, const py::array_t<int64_t>& labels, py::array& grad,
                        int64_t rows, int64_t cols, int64_t ignore_index, double smoothing, double z_loss,
                        double weight) {
  py::array_t<double> loss(rows);
  CrossEntropyRange r{static_cast<DType>(dtype), data_of(logits), labels.data(), mutable_data_of(grad),
                      loss.mutable_data(), cols, ignore_index, smoothing, z_loss, weight};
  double total;
  {
    py::gil_scoped_release release;
    total = run_cross_entropy(r, rows);
  }
  return py::make_tuple(loss, total);
}

}  // namespace

void nnfuse::register_softmax(py::module_& m) {
  m.def("softmax_forward", &softmax_forward);
  m.def("softmax_backward", &softmax_backward);
  m.def("softmax_cross_entropy", &cross_entropy);
}
