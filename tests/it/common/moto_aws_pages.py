"""moto_server, with DescribeParameters paged the way AWS pages it.

moto (5.x) answers DescribeParameters ten parameters a page whatever MaxResults asks; AWS
honours MaxResults up to 50. The call counts of a Parameter Store listing depend on exactly
that, so the test that measures them starts moto through this file, which replaces that one
response handler and changes nothing else. Arguments are moto_server's.
"""
import sys

from moto.core.responses import ActionResult
from moto.server import main
from moto.ssm.responses import SimpleSystemManagerResponse

AWS_MAX_RESULTS = 50


def describe_parameters(self):
    asked = self._get_param("MaxResults") or 10
    size = max(1, min(int(asked), AWS_MAX_RESULTS))
    start = int((self._get_param("NextToken") or "0").strip() or "0")
    found = self.ssm_backend.describe_parameters(
        self._get_param("Filters"), self._get_param("ParameterFilters")
    )
    page = found[start : start + size]
    response = {"Parameters": [p.describe_response_object(False) for p in page]}
    if start + size < len(found):
        response["NextToken"] = str(start + size)
    return ActionResult(response)


SimpleSystemManagerResponse.describe_parameters = describe_parameters

if __name__ == "__main__":
    sys.exit(main())
