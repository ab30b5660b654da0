# Slicer's extension packaging (config, CPack): not part of what is tested here.
