"""mmgenre: movie genre classification from posters and overviews, alone and fused.

Importing the package is cheap (no TensorFlow); submodules that need it import it.
"""

__version__ = "0.1.0"
