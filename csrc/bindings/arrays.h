// NumPy arrays as the bindings hand them to the kernels, and the checks of the
// direct (fast-path) bindings, shared by every feature's binding file.
#pragma once

#include <algorithm>
#include <cstdint>

#include <pybind11/numpy.h>

namespace nnfuse {
namespace bindings {

inline const void* data_of(const pybind11::array& a) { return a.data(); }
inline void* mutable_data_of(pybind11::array& a) { return const_cast<void*>(a.data()); }

// Whether `a` is already in the form the kernels take for an operand of
// `like`: C-contiguous, the same dtype object and the same shape.
inline bool same_form(const pybind11::array& a, const pybind11::array& like) {
  return (a.flags() & pybind11::array::c_style) && a.dtype().ptr() == like.dtype().ptr() && a.ndim() == like.ndim() &&
         std::equal(a.shape(), a.shape() + a.ndim(), like.shape());
}

// Whether two contiguous arrays share any byte (an array of another kind
// that a kernel reads while it writes `b`: cross-entropy labels in the
// gradient's memory must be copied first).
inline bool shares_bytes(const pybind11::array& a, const pybind11::array& b) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  pybind11::ssize_t an = a.nbytes(), bn = b.nbytes();
  return an > 0 && bn > 0 && a0 < b0 + bn && b0 < a0 + an;
}

// Whether `a` and `out` share memory other than as the very same buffer (an
// in-place call), which the direct bindings leave to the general path.
inline bool overlaps_out(const pybind11::array& a, const pybind11::array& out) {
  if (a.data() == out.data() && a.nbytes() == out.nbytes()) return false;
  return shares_bytes(a, out);
}

// `a` as rows along its last axis (false, for the general path, when it is
// 0-d or empty).
inline bool last_axis_rows(const pybind11::array& a, int64_t& rows, int64_t& cols) {
  if (a.ndim() == 0 || a.size() == 0) return false;
  cols = static_cast<int64_t>(a.shape(a.ndim() - 1));
  rows = static_cast<int64_t>(a.size()) / cols;
  return true;
}

// The output test of every direct binding: the form of `like`, writeable.
inline bool direct_output(const pybind11::array& out, const pybind11::array& like) {
  return same_form(out, like) && out.writeable();
}

}  // namespace bindings
}  // namespace nnfuse
