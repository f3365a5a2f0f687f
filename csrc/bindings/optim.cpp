// Bindings of the multi-tensor optimizer step. The per-array checks live here
// rather than in Python because a step may take a thousand small arrays and a
// Python loop of checks would cost more than the update itself; every error
// still names the argument and the index (ValueError for shapes, lengths,
// layout and read-only arrays; TypeError for dtypes).
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
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
    return py::reinterpret_borrow<py::array>(item);
  }
  void layout(const py::array& a, const std::string& name, size_t i, bool writeable) const {
    if (!(a.flags() & py::array::c_style)) throw py::value_error(where(name, i) + " must be C-contiguous");
    if (writeable && !a.writeable()) throw py::value_error(where(name, i) + " is read-only");
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

  std::vector<OptimTensor> tensors(n);
  for (size_t i = 0; i < n; ++i) {
    py::array p = check.array(params[i], "params", i);
    check.dtype(p, param_dtype, "params", i, "every parameter in one step has the same dtype");
    check.layout(p, "params", i, true);
    py::array g = check.array(grads[i], "grads", i);
    check.shape(g, p, "grads", i);
    check.dtype(g, param_dtype, "grads", i, "gradients have their parameter's dtype");
    check.layout(g, "grads", i, false);
    if (g.data() == p.data() && p.size() > 0)
      throw py::value_error(check.where("grads", i) + " is the same memory as 'params[" + std::to_string(i) + "]'");
    OptimTensor& t = tensors[i];
    t.param = p.mutable_data();
    t.grad = g.data();
    t.n = static_cast<int64_t>(p.size());
    for (size_t k = 0; k < 3; ++k) {
      t.state[k] = nullptr;
      if (k >= state_lists.size() || states[k].is_none()) continue;
      py::array s = check.array(state_lists[k][i], state_names[k], i);
      check.shape(s, p, state_names[k], i);
      check.dtype(s, state_dtype, state_names[k], i, "optimizer state is float64 for float64 parameters, float32 otherwise");
      check.layout(s, state_names[k], i, true);
      t.state[k] = s.mutable_data();
    }
    t.master = nullptr;
    if (has_master) {
      py::array m = check.array(master_list[i], "master_params", i);
      check.shape(m, p, "master_params", i);
      check.dtype(m, state_dtype, "master_params", i, "master weights are float32");
      check.layout(m, "master_params", i, true);
      t.master = m.mutable_data();
    }
  }

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
}
