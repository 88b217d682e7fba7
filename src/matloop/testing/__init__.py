"""The contract every matloop potential family meets, as importable assertions.

Anyone adding a family (in matloop or in a plug-in package) runs these on their model:

* :func:`assert_potential_physics` — F = −∇E, translation/rotation/permutation invariance, stress
  = strain derivative, smooth cutoff, supercell consistency (on a float64 calculator);
* :func:`assert_two_element_physics` — the same on a two-element alloy, plus sensitivity to the
  species of an atom;
* :func:`assert_dtype_consistent` — float32 and float64 copies of a model agree;
* :func:`assert_batch_equals_single` — a batch of structures gives each structure's own result;
* :func:`assert_capabilities_declared` — what the family provides (variance, fit hook,
  pretrained weights) is declared on the class (see :class:`matloop.models.base.Potential`).
"""

from matloop.testing.contract import (
    assert_batch_equals_single,
    assert_capabilities_declared,
    assert_dtype_consistent,
)
from matloop.testing.physics import (
    assert_forces_are_gradient,
    assert_invariances,
    assert_potential_physics,
    assert_smooth_cutoff,
    assert_species_matter,
    assert_stress_is_strain_derivative,
    assert_supercell_consistent,
    assert_two_element_physics,
    two_element_structure,
)

__all__ = [
    "assert_batch_equals_single",
    "assert_capabilities_declared",
    "assert_dtype_consistent",
    "assert_forces_are_gradient",
    "assert_invariances",
    "assert_potential_physics",
    "assert_smooth_cutoff",
    "assert_species_matter",
    "assert_stress_is_strain_derivative",
    "assert_supercell_consistent",
    "assert_two_element_physics",
    "two_element_structure",
]
