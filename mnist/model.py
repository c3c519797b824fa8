"""The MNIST classifier: a small CNN, once in Keras 3 and once in PyTorch, layer for layer alike.

Both take a batch of 28 x 28 images with pixels scaled to [0, 1] (`mnist.data.normalize`) and
differ only in the last step: the Keras model ends in a softmax (probabilities, what a server
returns), the PyTorch one returns logits (what `torch.nn.CrossEntropyLoss` expects).

The hyperparameters Katib tunes are the arguments of the builders: the learning rate, the number
of convolution blocks (1 to 3) and the optimizer (sgd, adam or rmsprop).

Each framework is imported inside its builder: importing TensorFlow takes about 10 seconds and
torch about 3 here, and each trainer needs only one of them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mnist.cli import positive_float

if TYPE_CHECKING:
    import keras
    import torch

OPTIMIZERS = ("sgd", "adam", "rmsprop")
MAX_LAYERS = 3
FILTERS = (32, 64, 64)  # per convolution block; the third block sees a 7 x 7 map
DROPOUT = 0.5
SGD_MOMENTUM = 0.9  # plain SGD at Katib-sized learning rates barely moves in a few epochs
NUM_CLASSES = 10


def _check(num_layers: int, optimizer: str) -> None:
    if not 1 <= num_layers <= MAX_LAYERS:
        raise ValueError(f"num_layers must be 1 to {MAX_LAYERS}, got {num_layers}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The hyperparameter flags every trainer shares: the arguments of the builders below."""
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-3,
        help="optimizer step size, > 0 (default: 0.001)",
    )
    parser.add_argument(
        "--num-layers",
        type=int,
        default=2,
        choices=range(1, MAX_LAYERS + 1),
        help=f"convolution blocks, 1 to {MAX_LAYERS} (default: 2)",
    )
    parser.add_argument(
        "--optimizer", default="adam", choices=OPTIMIZERS, help="optimizer (default: adam)"
    )


def build_keras_model(
    learning_rate: float = 1e-3, num_layers: int = 2, optimizer: str = "adam"
) -> keras.Model:
    """A compiled Keras CNN: (N, 28, 28) float pixels in [0, 1] -> (N, 10) probabilities."""
    import keras

    _check(num_layers, optimizer)
    model = keras.Sequential(name="mnist_cnn")
    model.add(keras.Input(shape=(28, 28), name="image"))
    model.add(keras.layers.Reshape((28, 28, 1)))  # Conv2D wants a channel axis
    for filters in FILTERS[:num_layers]:
        model.add(keras.layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(keras.layers.MaxPooling2D(2))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dropout(DROPOUT))
    model.add(keras.layers.Dense(NUM_CLASSES, activation="softmax"))

    optimizers = {
        "sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=SGD_MOMENTUM),
        "adam": lambda: keras.optimizers.Adam(learning_rate),
        "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate),
    }
    model.compile(
        optimizer=optimizers[optimizer](),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_torch_model(num_layers: int = 2) -> torch.nn.Sequential:
    """The same CNN in PyTorch: (N, 28, 28) float pixels in [0, 1] -> (N, 10) logits."""
    from torch import nn

    _check(num_layers, "adam")
    # (N, 28, 28) -> (N, 1, 28, 28): Conv2d wants a channel axis.
    layers: list[nn.Module] = [nn.Unflatten(1, (1, 28))]
    channels, side = 1, 28
    for filters in FILTERS[:num_layers]:
        layers += [nn.Conv2d(channels, filters, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
        channels, side = filters, side // 2
    layers += [nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(channels * side * side, NUM_CLASSES)]
    return nn.Sequential(*layers)


def build_torch_optimizer(
    model: torch.nn.Module, learning_rate: float = 1e-3, optimizer: str = "adam"
) -> torch.optim.Optimizer:
    """The torch optimizer matching the Keras one of the same name and settings."""
    import torch

    _check(1, optimizer)
    params = model.parameters()
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=SGD_MOMENTUM)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=learning_rate)
    # Keras' RMSprop defaults rho=0.9 and epsilon=1e-7; torch's alpha is the same rho.
    return torch.optim.RMSprop(params, lr=learning_rate, alpha=0.9, eps=1e-7)
