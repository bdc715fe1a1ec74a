"""Limit/offset pages whose parameters are checked before they reach the database."""
from rest_framework.pagination import LimitOffsetPagination

from . import params


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pagination, bounded.

    `limit` is an integer of at least 1 and `offset` one of at least 0, each given once; anything else is a
    400 naming the parameter (DRF would quietly use its default). A limit above `max_limit` is clamped to
    it, as DRF does; an offset past the end is an empty page. Unbounded, a 35-digit limit went into SQLite's
    LIMIT clause, which holds 64-bit integers, and answered 500 ("datatype mismatch").
    """

    max_limit = 1000

    def get_limit(self, request):
        limit = params.integer(request, self.limit_query_param, minimum=1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request):
        # DRF slices only when offset <= count, so the database never sees a larger one.
        return params.integer(request, self.offset_query_param) or 0

    def get_schema_operation_parameters(self, view):
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"] |= {"minimum": 1, "default": self.default_limit}
        limit["description"] = (f"Number of results to return per page: {self.default_limit} when absent, "
                                f"at most {self.max_limit} (a larger limit is clamped to {self.max_limit}).")
        offset["schema"] |= {"minimum": 0, "default": 0}
        offset["description"] = "The initial index from which to return the results; past the end, none."
        return [limit, offset]
