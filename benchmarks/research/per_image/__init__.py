"""Label-free, per-image box rules on saved Lite0 maps: which box rule follows the score map at
every object scale (large centred animals, several small objects, a fixed ceiling camera).

One module per job, run from the repository root as ``python -m benchmarks.research.per_image.<job>``
(README.md in this folder has the exact commands): ``cache_features`` caches backbone features,
``evaluate_rules`` writes each candidate's boxes, ``summarize`` turns them into metrics with bootstrap
intervals, oracles and cross-validated picks, ``make_tables`` prints the markdown tables, ``timing``
measures the host cost per frame, ``analyze_levels`` and ``lobby_probe`` are the probes of the maps.
The rules themselves live in ``maps``, ``levels``, ``feature_graph``, ``instance_sets`` and ``scene``.
"""
