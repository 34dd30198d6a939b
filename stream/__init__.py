"""mespot.stream: per-frame, causal, learning-free stages of the spotting pipeline.

Sources and capture threads, resampling to the canonical rate, face tracking, alignment,
incremental optical flow, region features, snippet ring buffers and the one pipeline that
joins them for live and offline use alike.
"""
