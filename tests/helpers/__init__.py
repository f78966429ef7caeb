"""Helpers of the test suite, one package for every test folder (pyproject puts ``tests/`` on pytest's
``pythonpath``, so ``from helpers.data import VIDEOS`` works from any folder and no helper module can be
shadowed by another folder's ``conftest``):

* :mod:`helpers.data`: the shared data beside the checkout (models, videos, ground truth) and tiny models;
* :mod:`helpers.broker`: a private Mosquitto for tests, test certificates, required programs;
* :mod:`helpers.edge_service`: the edge service as a process, site configurations, local cameras;
* :mod:`helpers.controller`: a test intersection, its timeline checker, an edge stand-in and a listener;
* :mod:`helpers.queue_sim`: a point-queue simulator to drive the controller core.
"""
