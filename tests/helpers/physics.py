"""Physics assertions every potential family must pass: now in :mod:`matloop.testing`.

Kept so existing tests (and users' copies) importing ``helpers.physics`` keep working.
"""

from matloop.testing.physics import (  # noqa: F401 - re-exported
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
