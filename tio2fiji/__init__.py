"""tio2fiji: SEM images of TiO2 nanoparticles to ImageJ-exact particle statistics."""

__version__ = "0.1.0"
