# Slicer's UseSlicer.cmake sets compilers and paths; an extension of scripted modules needs none of it here.
