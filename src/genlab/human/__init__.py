"""Human evaluation: HYPE, Human eYe Perceptual Evaluation (Zhou et al., NeurIPS 2019,
arXiv 1904.01121), as a web app on this machine.

* :mod:`genlab.human.protocol`: the HYPE-time staircase, the scores, bootstrap intervals.
* :mod:`genlab.human.db`: the SQLite store (every judgement, every rater's plan and state).
* :mod:`genlab.human.images`: real and generated images as same-looking PNGs.
* :mod:`genlab.human.app`, :mod:`genlab.human.server`: the Flask app under waitress.
* :mod:`genlab.human.results`: scores, ``hype.json`` for ``genlab compare``, plot, CSV export.
* :mod:`genlab.human.simulate`: scripted raters over HTTP, labelled simulated.
* :mod:`genlab.human.cli`: ``genlab hype serve|report|export|simulate``.

Nothing is imported here: the web stack loads only when a study runs. See docs/human.md.
"""
