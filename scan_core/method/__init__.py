"""The method on arrays and configs, never a run directory; one module per stage and what they share.

Stages: ``pretext`` (SimCLR / NT-Xent, the whitened pixel PCA), ``whitening`` and ``hog`` (the
whitened PCA of a fixed description, the HOG), ``manifold`` (UMAP of the features the heads learn
on), ``neighbors`` (faiss mining, rank fusion), ``num_clusters`` (a suggested K), ``clustering``
(SCAN heads and the head kept), ``selflabel``, ``projection`` (the 2-D map), ``refine`` (label
spreading and the head trained on it). Shared: ``augment`` (batched augmentations), ``backbones``
(the networks), ``batches`` (shuffled epochs), ``graph`` (the normalised kNN graph), ``cosine``,
``metrics`` (Hungarian ACC, NMI, ARI), ``confidence`` (calibrated confidence, the chance warning).
"""
