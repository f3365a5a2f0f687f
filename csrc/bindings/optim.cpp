// Bindings of the multi-tensor optimizer step. The per-array checks live here
// rather than in Python because a step may take a thousand small arrays and a
// Python loop of checks would cost more than the update itself; every error
// still names the argument and the index (ValueError for shapes, lengths,
// layout and read-only arrays; TypeError for dtypes).
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/register.h"
#include "cpu/optim_dispatch.h"
#include "nnfuse/ops/optim.h"

namespace py = pybind11;
using namespace nnfuse;

namespace {

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dtype_text(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

struct Checker {
  std::string func;
  std::string where(const std::string& name, size_t i) const { return func + "(): '" + name + "[" + std::to_string(i) + "]'"; }

  py::array array(const py::handle& item, const std::string& name, size_t i) const {
    if (!py::isinstance<py::array>(item))
      throw py::type_error(where(name, i) + " must be a numpy.ndarray, got " +
                           py::str(py::type::handle_of(item).attr("__name__")).cast<std::string>());
    // A subclass (rare: np.memmap ...) is looked at once more: a numpy.ma
    // array's mask would be ignored, its masked entries stepped silently.
    if (Py_TYPE(item.ptr()) != py::detail::npy_api::get().PyArray_Type_ &&
        py::isinstance(item, py::module_::import("numpy").attr("ma").attr("MaskedArray")))
      throw py::type_error(where(name, i) + " is a numpy.ma.MaskedArray, whose mask nnfuse would ignore; pass "
                           "np.ma.getdata(" + name + "[" + std::to_string(i) + "]) or its .filled(value)");
    return py::reinterpret_borrow<py::array>(item);
  }
  // An array the step writes in place: C-contiguous and writeable.
  void written(const py::array& a, const std::string& name, size_t i) const {
    if (!(a.flags() & py::array::c_style)) throw py::value_error(where(name, i) + " must be C-contiguous");
    if (!a.writeable()) throw py::value_error(where(name, i) + " is read-only");
  }
  void dtype(const py::array& a, const py::dtype& expected, const std::string& name, size_t i,
             const std::string& why) const {
    if (!a.dtype().equal(expected))
      throw py::type_error(where(name, i) + " has dtype " + dtype_text(a) + ", expected " +
                           py::str(expected).cast<std::string>() + " (" + why + ")");
  }
  void shape(const py::array& a, const py::array& p, const std::string& name, size_t i) const {
    bool same = a.ndim() == p.ndim();
    for (py::ssize_t k = 0; same && k < a.ndim(); ++k) same = a.shape(k) == p.shape(k);
    if (!same)
      throw py::value_error(where(name, i) + " has shape " + shape_text(a) + " but 'params[" + std::to_string(i) +
                            "]' has shape " + shape_text(p));
  }
  void length(const py::list& l, size_t n, const std::string& name) const {
    if (l.size() != n)
      throw py::value_error(func + "(): '" + name + "' has " + std::to_string(l.size()) + " arrays but 'params' has " +
                            std::to_string(n));
  }
};

// The byte range of one of a step's arrays. Written ones (parameters, states,
// master weights) must not overlap any other array; read ones (gradients) may
// overlap each other. Otherwise the update of one element would read what the
// update of another wrote, on another thread in any order.
struct ByteRange {
  uintptr_t begin, end;
  bool written;
  size_t id;
};

// Sorts ranges by start: a least-significant-digit radix sort, one stable
// pass per byte of the start addresses that differs between ranges (the top
// bytes of user-space addresses do not). A step may take thousands of arrays, and
// std::sort's comparisons of unrelated addresses mispredict: 4000 ranges
// (Adam over 1000 arrays) took about 230 us that way, as long as the step
// itself for arrays of ten elements.
void sort_by_begin(std::vector<ByteRange>& ranges) {
  constexpr size_t kFewRanges = 64;
  if (ranges.size() < kFewRanges) {
    std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
    return;
  }
  uintptr_t any_bit = 0, every_bit = ~uintptr_t(0);
  for (const ByteRange& r : ranges) {
    any_bit |= r.begin;
    every_bit &= r.begin;
  }
  const uintptr_t varying = any_bit ^ every_bit;
  std::vector<ByteRange> sorted(ranges.size());
  for (unsigned shift = 0; shift < 8 * sizeof(uintptr_t); shift += 8) {
    if (((varying >> shift) & 0xff) == 0) continue;
    size_t start[257] = {};
    for (const ByteRange& r : ranges) ++start[((r.begin >> shift) & 0xff) + 1];
    for (size_t digit = 0; digit < 256; ++digit) start[digit + 1] += start[digit];
    for (const ByteRange& r : ranges) sorted[start[(r.begin >> shift) & 0xff]++] = r;
    ranges.swap(sorted);
  }
}

// A pair of ids of ranges that break that rule, or none. Sorted by start, a
// range overlapping an earlier one overlaps the earlier one that ends last
// (the last-ending written one, for a read range), so one pass finds a pair
// whenever one exists. Sorts `ranges` in place.
std::optional<std::pair<size_t, size_t>> overlapping_pair(std::vector<ByteRange>& ranges) {
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(), [](const ByteRange& r) { return r.begin == r.end; }),
               ranges.end());
  sort_by_begin(ranges);
  const ByteRange* last_any = nullptr;
  const ByteRange* last_written = nullptr;
  for (const ByteRange& r : ranges) {
    const ByteRange* other = r.written ? last_any : last_written;
    if (other && other->end > r.begin) return std::make_pair(other->id, r.id);
    if (!last_any || r.end > last_any->end) last_any = &r;
    if (r.written && (!last_written || r.end > last_written->end)) last_written = &r;
  }
  return std::nullopt;
}

// overlapping_pair, skipped when the ranges are those of the last step of
// this thread that passed (by a 64-bit hash of the set of ranges: the sum of
// a scrambled (start, end, written) per range, which the CPU computes for
// many ranges at once): a training loop hands over the same arrays, or
// reallocated ones at the same addresses, step after step. Adam over 1000
// arrays of ten elements, 1 thread: the step took about 210 us before this
// check, about 430 sorting every step, about 250 with the hash.
std::optional<std::pair<size_t, size_t>> overlapping_pair_unless_seen(std::vector<ByteRange>& ranges) {
  thread_local uint64_t last_passed = 0;
  auto scramble = [](uint64_t v) {  // splitmix64's finalizer
    v ^= v >> 30;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27;
    v *= 0x94d049bb133111ebull;
    return v ^ (v >> 31);
  };
  uint64_t hash = scramble(ranges.size());
  for (const ByteRange& r : ranges) hash += scramble(scramble(r.begin ^ uint64_t(r.written)) + r.end);
  if (hash == last_passed) return std::nullopt;
  std::optional<std::pair<size_t, size_t>> pair = overlapping_pair(ranges);
  if (!pair) last_passed = hash;
  return pair;
}

// A step's arrays as ranges: id = array index * kRoles + role, the columns of
// the CUDA steps' pointer table (0 params, 1 grads, 2-4 the states, 5
// master_params), named only for an error. The buffer is kept between steps
// of a thread: a step of a thousand arrays would otherwise allocate (and
// fault in) about 200 KiB each time.
constexpr size_t kRoles = 6;
std::vector<ByteRange>& step_ranges() {
  thread_local std::vector<ByteRange> ranges;
  ranges.clear();
  return ranges;
}

// Raises the ValueError naming both arrays if `ranges` (step_ranges' layout)
// break the rule.
void check_step_overlap(const std::string& func, std::vector<ByteRange>& ranges,
                        const std::vector<std::string>& state_names) {
  std::optional<std::pair<size_t, size_t>> pair = overlapping_pair_unless_seen(ranges);
  if (!pair) return;
  auto label = [&](size_t id) {
    const size_t role = id % kRoles;
    const std::string name = role == 0 ? "params" : role == 1 ? "grads" : role == 5 ? "master_params" : state_names[role - 2];
    return "'" + name + "[" + std::to_string(id / kRoles) + "]'";
  };
  throw py::value_error(func + "(): " + label(std::min(pair->first, pair->second)) + " and " +
                        label(std::max(pair->first, pair->second)) +
                        " share memory; the arrays a step writes (parameters, states, master weights) must "
                        "not overlap each other or a gradient");
}

// check_step_overlap for the CUDA steps: their pointer table (n rows of the
// kRoles columns, 0 where absent) and each row's element count.
void check_table_overlap(const std::string& func,
                         const py::array_t<uint64_t, py::array::c_style | py::array::forcecast>& table,
                         const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& counts,
                         size_t param_itemsize, size_t state_itemsize, const std::vector<std::string>& state_names) {
  const size_t n = static_cast<size_t>(counts.size());
  if (table.ndim() != 2 || static_cast<size_t>(table.shape(0)) != n || static_cast<size_t>(table.shape(1)) != kRoles)
    throw py::value_error("check_table_overlap(): 'table' must have one row of 6 pointers per count");
  std::vector<ByteRange>& ranges = step_ranges();
  for (size_t i = 0; i < n; ++i) {
    for (size_t role = 0; role < kRoles; ++role) {
      const uintptr_t begin = table.data()[i * kRoles + role];
      if (begin == 0) continue;
      const uintptr_t bytes = static_cast<uintptr_t>(counts.data()[i]) * (role < 2 ? param_itemsize : state_itemsize);
      ranges.push_back({begin, begin + bytes, role != 1, i * kRoles + role});
    }
  }
  check_step_overlap(func, ranges, state_names);
}

// overlapping_pair for Python (the optimizer classes' check that no two
// parameters share memory): ranges as arrays of begins, sizes in bytes and
// written flags; the pair as indices, or None.
py::object overlapping_pair_of(const py::array_t<uint64_t, py::array::c_style | py::array::forcecast>& begins,
                               const py::array_t<uint64_t, py::array::c_style | py::array::forcecast>& sizes,
                               const py::array_t<bool, py::array::c_style | py::array::forcecast>& written) {
  const py::ssize_t n = begins.size();
  if (sizes.size() != n || written.size() != n)
    throw py::value_error("overlapping_pair(): 'begins', 'sizes' and 'written' differ in length");
  std::vector<ByteRange> ranges;
  ranges.reserve(static_cast<size_t>(n));
  for (py::ssize_t i = 0; i < n; ++i)
    ranges.push_back({begins.data()[i], begins.data()[i] + sizes.data()[i], written.data()[i], static_cast<size_t>(i)});
  std::optional<std::pair<size_t, size_t>> pair = overlapping_pair(ranges);
  if (!pair) return py::none();
  return py::make_tuple(std::min(pair->first, pair->second), std::max(pair->first, pair->second));
}

py::tuple optim_step(const std::string& func, int kind, int dtype, const py::dtype& param_dtype,
                     const py::dtype& state_dtype, const py::list& params, const py::list& grads,
                     const std::vector<std::string>& state_names, const std::vector<py::object>& states,
                     const py::object& masters, const std::vector<double>& hyper, uint32_t flags, double clipvalue,
                     int clip_mode, double clip, int nonfinite, bool keras, const py::object& reduce) {
  Checker check{func};
  const size_t n = params.size();
  check.length(grads, n, "grads");
  OptimConfig config{};
  config.kind = static_cast<OptimKind>(kind);
  config.dtype = static_cast<DType>(dtype);
  config.flags = flags;
  config.clip = clipvalue;
  if (hyper.size() > sizeof(config.hyper) / sizeof(double)) throw py::value_error(func + "(): too many hyper-parameters");
  for (size_t k = 0; k < hyper.size(); ++k) config.hyper[k] = hyper[k];

  std::vector<py::list> state_lists;
  for (size_t k = 0; k < states.size(); ++k) {
    if (states[k].is_none()) {
      state_lists.emplace_back();
      continue;
    }
    if (!py::isinstance<py::list>(states[k]))
      throw py::type_error(func + "(): '" + state_names[k] + "' must be a list of numpy.ndarray");
    state_lists.push_back(py::reinterpret_borrow<py::list>(states[k]));
    check.length(state_lists.back(), n, state_names[k]);
  }
  py::list master_list;
  bool has_master = !masters.is_none();
  if (has_master) {
    master_list = py::reinterpret_borrow<py::list>(masters);
    check.length(master_list, n, "master_params");
  }

  std::vector<ByteRange>& ranges = step_ranges();
  // Every array of index i has params[i]'s shape: bytes = elements x the
  // dtype's size, taken once per dtype.
  const uintptr_t param_bytes = static_cast<uintptr_t>(param_dtype.itemsize());
  const uintptr_t state_bytes = static_cast<uintptr_t>(state_dtype.itemsize());
  auto add_range = [&ranges](const void* data, uintptr_t bytes, bool written, size_t i, size_t role) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
    ranges.push_back({begin, begin + bytes, written, i * kRoles + role});
  };
  std::vector<OptimTensor> tensors(n);
  // Gradients are only read: a strided one is copied C-contiguous (kept alive
  // here until the step has run); the written arrays must be C-contiguous.
  std::vector<py::array> grad_copies;
  for (size_t i = 0; i < n; ++i) {
    py::array p = check.array(params[i], "params", i);
    check.dtype(p, param_dtype, "params", i, "every parameter in one step has the same dtype");
    check.written(p, "params", i);
    py::array g = check.array(grads[i], "grads", i);
    check.shape(g, p, "grads", i);
    check.dtype(g, param_dtype, "grads", i, "gradients have their parameter's dtype");
    if (!(g.flags() & py::array::c_style)) {
      g = py::array::ensure(g, py::array::c_style);
      grad_copies.push_back(g);
    }
    OptimTensor& t = tensors[i];
    t.param = p.mutable_data();
    t.grad = g.data();
    t.n = static_cast<int64_t>(p.size());
    const uintptr_t elements = static_cast<uintptr_t>(t.n);
    add_range(t.param, elements * param_bytes, true, i, 0);
    add_range(t.grad, elements * param_bytes, false, i, 1);
    for (size_t k = 0; k < 3; ++k) {
      t.state[k] = nullptr;
      if (k >= state_lists.size() || states[k].is_none()) continue;
      py::array s = check.array(state_lists[k][i], state_names[k], i);
      check.shape(s, p, state_names[k], i);
      check.dtype(s, state_dtype, state_names[k], i, "optimizer state is float64 for float64 parameters, float32 otherwise");
      check.written(s, state_names[k], i);
      t.state[k] = s.mutable_data();
      add_range(t.state[k], elements * state_bytes, true, i, 2 + k);
    }
    t.master = nullptr;
    if (has_master) {
      py::array m = check.array(master_list[i], "master_params", i);
      check.shape(m, p, "master_params", i);
      check.dtype(m, state_dtype, "master_params", i, "master weights are float32");
      check.written(m, "master_params", i);
      t.master = m.mutable_data();
      add_range(t.master, elements * state_bytes, true, i, 5);
    }
  }
  check_step_overlap(func, ranges, state_names);

  OptimStepOptions options;
  options.clip_mode = static_cast<ClipMode>(clip_mode);
  options.clip = clip;
  options.nonfinite = static_cast<NonfinitePolicy>(nonfinite);
  options.keras = keras;
  if (!reduce.is_none()) {
    options.reduce = [&reduce](double local) {
      py::gil_scoped_acquire gil;
      return reduce(local).cast<double>();
    };
  }
  OptimStepResult r;
  {
    py::gil_scoped_release release;
    r = run_optim_step(config, tensors, options);
  }
  py::object norm = r.has_norm ? py::object(py::float_(r.grad_norm)) : py::object(py::none());
  return py::make_tuple(norm, r.clip_factor, r.skipped);
}

}  // namespace

void nnfuse::register_optim(py::module_& m) {
  m.def("optim_step", &optim_step);
  m.def("optim_prefetch", &nnfuse::optim_prefetch);
  m.def("overlapping_pair", &overlapping_pair_of, py::arg("begins"), py::arg("sizes"), py::arg("written"));
  m.def("check_table_overlap", &check_table_overlap, py::arg("func"), py::arg("table"), py::arg("counts"),
        py::arg("param_itemsize"), py::arg("state_itemsize"), py::arg("state_names"));
}
