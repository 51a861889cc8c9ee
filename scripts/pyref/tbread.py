"""Reads a folder's TensorBoard event files with TensorBoard's own loader
(the plugin event accumulator its server uses) and prints, as JSON, every
scalar and text summary by tag: {"scalars": {tag: [[step, value], ...]},
"text": {tag: [[step, text], ...]}, "files": n}.

    python tbread.py RUN_FOLDER
"""
import glob
import json
import os
import sys

from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.util import tensor_util

folder = sys.argv[1]
acc = pea.EventAccumulator(folder, size_guidance={pea.TENSORS: 0})
acc.Reload()
out = {"scalars": {}, "text": {}, "files": len(glob.glob(os.path.join(folder, "*tfevents*")))}
for plugin, key in (("scalars", "scalars"), ("text", "text")):
    try:
        tags = sorted(acc.PluginTagToContent(plugin))
    except KeyError:  # no summary of that plugin
        tags = []
    for tag in tags:
        rows = []
        for ev in acc.Tensors(tag):
            v = tensor_util.make_ndarray(ev.tensor_proto)
            if key == "scalars":
                rows.append([ev.step, float(v)])
            else:
                rows.append([ev.step, v.item().decode() if hasattr(v, "item") else str(v)])
        out[key][tag] = rows
json.dump(out, sys.stdout)
