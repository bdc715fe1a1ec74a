"""The schema of the error answers, so that every status an operation can give is documented."""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what went wrong, e.g. \"Not found.\"")


PARAMETER_ERRORS = OpenApiResponse(
    {"type": "object", "additionalProperties": {"type": "string"}},
    description='A query parameter is malformed, unknown or repeated: {"<parameter>": "<what is wrong>"}.',
)
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="Nothing public has this identifier.")
NOT_ACCEPTABLE = OpenApiResponse(ErrorSerializer, description="The Accept header asks for something other than "
                                                              "this operation's media types.")


class ApiSchema(AutoSchema):
    """drf-spectacular's operation, plus the errors it can answer: 400 where it reads query parameters,
    404 where its path names an object, and 406 (content negotiation) everywhere. Errors are JSON."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        errors = {"400": PARAMETER_ERRORS if "query" in locations else None,
                  "404": NOT_FOUND if "path" in locations else None,
                  "406": NOT_ACCEPTABLE}
        for code, response in errors.items():
            if response is not None:
                answer = self._get_response_for_code(response, code, ["application/json"])
                operation["responses"].setdefault(code, answer)
        return operation
