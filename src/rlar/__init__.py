"""rlar: clinically aligned multitask thyroid ultrasound assessment.

Layers, bottom to top (each imports only from layers below it):
    data -> radiomics -> models -> strategies -> training / evaluation -> reporting / inference -> cli
"""

__version__ = "0.1.0"
