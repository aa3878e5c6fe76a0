"""moto_server with the project's fixes for IAM enforcement (moto 5.2.5), run by devenv::moto.

Same arguments as `moto_server`. Two fixes to how moto checks a request's signature once IAM is
enforced (`INITIAL_NO_AUTH_ACTION_COUNT`, `POST /moto-api/reset-auth`); neither changes what
moto authorizes:

1. Query-protocol requests (a form POST: CloudFormation, IAM, SQS, ...). The web server has
   consumed the form by the time moto checks the signature, so moto signs the parsed form
   re-encoded by Python's `urlencode` (spaces as `+`, `~` escaped), which differs from the bytes
   the AWS SDKs sent (RFC 3986: `%20`, `~` kept) wherever a value has such characters: every
   CreateChangeSet with a template body failed with SignatureDoesNotMatch. The form is
   re-encoded as the SDKs encode it, in the order it came.
2. REST requests with an empty body (Lambda's GetFunction): moto signs the parsed query string
   as the body; the body signed is empty.
"""

import sys
from urllib.parse import quote

from moto.iam import access_control

_create_aws_request = access_control.IAMRequestBase._create_aws_request


def _sdk_form(data):
    pairs = []
    for key, values in data.items():
        for value in values if isinstance(values, list) else [values]:
            pairs.append(f"{quote(str(key), safe='-_.~')}={quote(str(value), safe='-_.~')}")
    return "&".join(pairs)


def create_aws_request(self):
    request = _create_aws_request(self)
    content_type = self._headers.get("Content-Type", "") or ""
    if not self._body:
        if "x-www-form-urlencoded" in content_type and isinstance(self._data, dict):
            request.data = _sdk_form(self._data).encode("utf-8")
        elif "x-www-form-urlencoded" not in content_type:
            request.data = b""
    return request


access_control.IAMRequestBase._create_aws_request = create_aws_request

from moto.server import main  # noqa: E402  (after the fix is in place)

sys.exit(main())
