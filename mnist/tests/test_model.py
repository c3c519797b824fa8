"""mnist.model: both builders give a 10-way classifier for every Katib-tunable setting."""

from __future__ import annotations

import numpy as np
import pytest

from mnist import model


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("optimizer", model.OPTIMIZERS)
def test_keras_model_outputs_probabilities(num_layers: int, optimizer: str) -> None:
    net = model.build_keras_model(1e-3, num_layers, optimizer)
    assert type(net.optimizer).__name__.lower() == optimizer
    probs = np.asarray(net.predict(np.zeros((2, 28, 28), np.float32), verbose=0))
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("optimizer", model.OPTIMIZERS)
def test_torch_model_outputs_logits(num_layers: int, optimizer: str) -> None:
    import torch

    net = model.build_torch_model(num_layers)
    opt = model.build_torch_optimizer(net, 1e-3, optimizer)
    assert type(opt).__name__.lower() == optimizer
    assert net(torch.zeros(2, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("kwargs", [{"num_layers": 0}, {"num_layers": 4}, {"optimizer": "lbfgs"}])
def test_out_of_range_hyperparameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be"):
        model.build_keras_model(**kwargs)
