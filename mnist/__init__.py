"""MNIST handwritten digits: the template case study (run its modules with `python -m mnist.X`)."""
