// ABI declaration of the LAMMPS plugin registration record (22 Jul 2025).
#pragma once
extern "C" {
typedef void *(lmp_factory1)(void *);
typedef void *(lmp_factory2)(void *, int, char **);
typedef struct {
  const char *version, *style, *name, *info, *author;
  union { lmp_factory1 *v1; lmp_factory2 *v2; } creator;
  void *handle;
} lmp_plugin_t;
typedef void (*lmp_regfunc)(lmp_plugin_t *, void *);
}
