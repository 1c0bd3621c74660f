"""Embedded data sets the modules train and evaluate on; nothing is downloaded at run time.

* :func:`digits` -- scikit-learn's 8x8 handwritten digits (1,797 images, ten classes), which
  ship inside scikit-learn, as float tensors in ``[0, 1]`` with a seeded stratified split.

>>> from toolkit.data import digits
>>> split = digits(seed=0)
>>> tuple(split.x_train.shape[1:]), split.num_classes
((1, 8, 8), 10)
"""

from .digits import DigitsSplit, digits

__all__ = ["DigitsSplit", "digits"]
