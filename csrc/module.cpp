// The Python module `tds_kernels._C`. It holds no functions: importing it runs the static
// initialisers of every translation unit, which define the `tds::` schemas
// (registration.cpp) and register the CPU / CUDA kernels (cpu/*.cpp, cuda/*.cpp).
// Plain CPython C API instead of pybind11 keeps the build small (as pytorch/extension-cpp).
#include <Python.h>

#ifndef TDS_CUDA_ARCH_LIST
#define TDS_CUDA_ARCH_LIST ""
#endif
#ifndef TDS_TORCH_VERSION
#define TDS_TORCH_VERSION ""
#endif

static struct PyModuleDef tds_module = {PyModuleDef_HEAD_INIT, "_C", "tds_kernels compiled ops", -1, nullptr};

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&tds_module);
  if (m == nullptr) return nullptr;
#ifdef TDS_WITH_CUDA
  PyModule_AddIntConstant(m, "WITH_CUDA", 1);
#else
  PyModule_AddIntConstant(m, "WITH_CUDA", 0);
#endif
#ifdef _OPENMP
  PyModule_AddIntConstant(m, "WITH_OPENMP", 1);
#else
  PyModule_AddIntConstant(m, "WITH_OPENMP", 0);
#endif
  PyModule_AddStringConstant(m, "CUDA_ARCH_LIST", TDS_CUDA_ARCH_LIST);
  PyModule_AddStringConstant(m, "TORCH_VERSION", TDS_TORCH_VERSION);
  return m;
}
