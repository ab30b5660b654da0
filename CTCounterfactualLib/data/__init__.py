"""Reading, writing and making CT volumes: file IO with geometry, phantoms, finding masks."""
