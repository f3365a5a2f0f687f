// Each feature binds its functions in its own file and is registered here, so
// module.cpp stays a list of features.
#pragma once

#include <pybind11/pybind11.h>

namespace nnfuse {

void register_activations(pybind11::module_& m);
void register_optim(pybind11::module_& m);
void register_softmax(pybind11::module_& m);

}  // namespace nnfuse
