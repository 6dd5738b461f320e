"""`processcontrol suspend|resume|get|describe`: the imperative side for incidents, as `flux suspend/resume` is.

Their arguments are in `processcontrol.cli`; `run` has the handlers, `spec` builds the object, `render` prints.
"""
