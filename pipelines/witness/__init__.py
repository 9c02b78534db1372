"""A C2SP tlog-witness (``anchorpipe witness serve``): cosigns the checkpoints of the logs it is configured
with, after checking each is consistent with the latest it cosigned, which it keeps durably."""
