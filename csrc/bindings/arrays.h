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

// Whether `a` and `out` share memory other than as the very same buffer (an
// in-place call), which the direct bindings leave to the general path.
inline bool overlaps_out(const pybind11::array& a, const pybind11::array& out) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* o0 = static_cast<const char*>(out.data());
  pybind11::ssize_t an = a.nbytes(), on = out.nbytes();
  if (a0 == o0 && an == on) return false;
  return an > 0 && on > 0 && a0 < o0 + on && o0 < a0 + an;
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
