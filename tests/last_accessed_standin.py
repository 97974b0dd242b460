"""A stand-in for IAM's last-accessed data, which moto does not implement, at the HTTP boundary.

The same one the demo runs (``accessrequests.devworld.last_accessed``): ``LastAccessedStandIn`` plugs into
``AwsProxy.answer`` and answers GenerateServiceLastAccessedDetails, GetServiceLastAccessedDetails and
GetAccessKeyLastUsed in AWS's documented query/XML shapes from the ``uses`` and ``key_uses`` a test sets; everything
else goes on to moto unchanged.
"""

from accessrequests.devworld.last_accessed import LastAccessedStandIn, Use

__all__ = ["LastAccessedStandIn", "Use"]
