"""BPNN inference in blocks of atoms gives the same results as one block."""

from __future__ import annotations

import torch
from ase.build import bulk
from conftest import TINY_BPNN_PARAMS

import matloop.models.bpnn as bpnn_module
from matloop.models.bpnn import BPNN, BPNNParams


def test_chunked_inference_matches_single_block(monkeypatch):
    torch.manual_seed(0)
    model = BPNN(["Cu"], BPNNParams.model_validate(TINY_BPNN_PARAMS)).double()
    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (3, 3, 2)
    atoms.rattle(0.1, seed=2)
    graph = model.graph(atoms)
    whole = model.predict(graph)
    monkeypatch.setattr(bpnn_module, "CHUNK_ATOMS", 7)
    blocks = model.predict(graph)
    torch.testing.assert_close(blocks["energy"], whole["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(blocks["forces"], whole["forces"], rtol=0, atol=1e-10)
    torch.testing.assert_close(blocks["virial"], whole["virial"], rtol=0, atol=1e-9)
    features = model.descriptors(graph)
    assert features.shape == (len(atoms), model.descriptor.n_features)
