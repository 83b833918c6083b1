"""The method, one module per stage (pretext, neighbors, clustering, selflabel, projection) and
what they share (augment, backbones, hog, cosine, metrics). Functions take arrays and configs, never
a run directory."""
