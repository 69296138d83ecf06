"""The pipeline's composite transforms, one small named PTransform per module.

read -> parse -> lateness -> windowing/aggregate -> format -> sinks.
"""
