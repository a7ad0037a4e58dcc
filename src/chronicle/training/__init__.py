"""From sessions to a training set: labels, the review queue, measured quality, exports, releases.

- ``labels``: a label is an ``annotation`` event; checked against the tables and the taxonomies.
- ``review``: what most needs a human, stratified by project.
- ``quality``: link precision and recall, classifier accuracy, against the labels.
- ``dataset``: episodes as (observation, action, reaction) rows, split, with a dataset card.
- ``release``: an export frozen at a checkpoint, and checked again from the log.
"""
