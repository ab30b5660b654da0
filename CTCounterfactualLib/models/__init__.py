"""The networks: the slice VQ-GAN, classifiers and their input conventions, weight files, published formats."""
