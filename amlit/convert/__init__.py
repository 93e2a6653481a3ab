"""``amlit convert ...``: weights made by other frameworks -> amlit checkpoints (``caffe.py``: Caffe .caffemodel)."""
