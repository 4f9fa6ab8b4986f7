"""An example survey app using flask-refiner-segment's public API only."""
