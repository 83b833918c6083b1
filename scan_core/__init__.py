"""SCAN Explorer's engine: unsupervised image classification with SCAN (Van Gansbeke et al., 2020).

Stages, one module each: ``sources`` -> ``images`` -> ``pretext`` -> ``neighbors`` ->
``clustering`` -> ``selflabel`` -> ``projection``; ``metrics`` scores them, ``run`` drives them.
"""
__version__ = "0.1.0"
