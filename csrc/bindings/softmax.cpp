// Bindings of the softmax kernels: contiguous arrays in (the Python layer has
// validated them and moved the softmax axis last), pointers and sizes to the
// dispatched kernels, GIL released while they run.
#include <cstdint>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/register.h"
#include "cpu/softmax_api.h"

namespace py = pybind11;
using namespace nnfuse;
using namespace nnfuse::bindings;

namespace {

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

// The common calls made cheap, as activation_direct: along the last axis of
// a non-empty array of at least one dimension, no mask, every array already
// in the kernels' form (C-contiguous, x's dtype object and shape, out
// writeable and either x's very memory or disjoint from it). Returns false
// having done nothing otherwise, and the Python layer's general path
// converts or explains. The general path's checks in Python cost ~3.5 us per
// call: a 1 x 16 float32 softmax took 4.5 us in all through it, 1.2 us here.
bool softmax_forward_direct(bool log, int dtype, const py::array& x, py::array& out, double scale,
                            bool masked_rows_nan) {
  int64_t rows, cols;
  if (!last_axis_rows(x, rows, cols)) return false;
  if (!same_form(x, x) || !direct_output(out, x) || overlaps_out(x, out)) return false;
  softmax_forward(log, dtype, x, py::none(), out, rows, cols, scale, masked_rows_nan);
  return true;
}

bool softmax_backward_direct(bool log, int dtype, const py::array& grad, const py::array& y, py::array& out,
                             double scale) {
  int64_t rows, cols;
  if (!last_axis_rows(grad, rows, cols)) return false;
  if (!same_form(grad, grad) || !same_form(y, grad) || !direct_output(out, grad) || overlaps_out(grad, out) ||
      overlaps_out(y, out)) {
    return false;
  }
  softmax_backward(log, dtype, grad, y, out, rows, cols, scale);
  return true;
}

// Returns (per-row losses as float64, their sum as run_cross_entropy adds them).
py::tuple cross_entropy(int dtype, const py::array& logits, const py::array& labels, py::array& grad,
                        int64_t rows, int64_t cols, int64_t ignore_index, double smoothing, double z_loss,
                        double weight) {
  py::array_t<double> loss(rows);
  CrossEntropyRange r{static_cast<DType>(dtype), data_of(logits), static_cast<const int64_t*>(data_of(labels)),
                      mutable_data_of(grad),
                      loss.mutable_data(), cols, ignore_index, smoothing, z_loss, weight};
  double total;
  {
    py::gil_scoped_release release;
    total = run_cross_entropy(r, rows);
  }
  return py::make_tuple(loss, total);
}

// The common cross-entropy call made cheap, as softmax_forward_direct: logits
// of at least one dimension with at least one row, int64 labels of the
// logits' shape less its last axis, every array in the kernels' form, grad
// writeable and the logits' very memory (in place) or disjoint from them,
// and the labels disjoint from grad (the kernels read a row's label again
// after writing gradient rows; the general path copies such labels first).
// The labels are checked here (the rows counted for "mean" on the way);
// a label outside [0, C) that is not ignore_index also returns None, having
// written nothing, and the general path names it. Returns (per-row losses,
// their sum, the rows counted) or None. The general path's NumPy label
// checks cost ~10 us per call.
py::object cross_entropy_direct(int dtype, const py::array& logits, const py::array& labels, py::array& grad,
                                int64_t ignore_index, double smoothing, double z_loss, bool mean) {
  int64_t rows, cols;
  if (!last_axis_rows(logits, rows, cols)) return py::none();
  if (!same_form(logits, logits) || !direct_output(grad, logits) || overlaps_out(logits, grad)) return py::none();
  if (!(labels.flags() & py::array::c_style) || labels.ndim() != logits.ndim() - 1 ||
      !std::equal(labels.shape(), labels.shape() + labels.ndim(), logits.shape()) ||
      !labels.dtype().equal(py::dtype::of<int64_t>()) || shares_bytes(labels, grad)) {
    return py::none();
  }
  // Without a branch per label (a bad one is the rare case; the general path
  // then finds the first): 2^20 labels took ~0.8 ms with the early exit.
  const int64_t* label = static_cast<const int64_t*>(labels.data());
  int64_t counted = 0;
  bool bad = false;
  for (int64_t i = 0; i < rows; ++i) {
    const bool ignored = label[i] == ignore_index;
    bad |= !ignored & (static_cast<uint64_t>(label[i]) >= static_cast<uint64_t>(cols));
    counted += !ignored;
  }
  if (bad) return py::none();
  const double weight = mean && counted ? 1.0 / static_cast<double>(counted) : 1.0;
  py::tuple result = cross_entropy(dtype, logits, labels, grad, rows, cols, ignore_index, smoothing, z_loss, weight);
  return py::make_tuple(result[0], result[1], counted);
}

}  // namespace

void nnfuse::register_softmax(py::module_& m) {
  m.def("softmax_forward", &softmax_forward);
  m.def("softmax_backward", &softmax_backward);
  m.def("softmax_forward_direct", &softmax_forward_direct);
  m.def("softmax_backward_direct", &softmax_backward_direct);
  m.def("softmax_cross_entropy", &cross_entropy);
  m.def("softmax_cross_entropy_direct", &cross_entropy_direct);
}
