"""Checkpoint (de)serialisation of protobuf messages: identity vectors take a fast path and keep every value."""

import json

from google.protobuf import json_format

from idlock.v1 import common_pb2
from services.orchestrator.views import dict_to_msg, msg_to_dict


def test_identity_vectors_round_trip_through_json_exactly():
    v = common_pb2.IdentityVector(encoder="dlib", values=[0.1 * i - 3.3 for i in range(128)])
    d = json.loads(json.dumps(msg_to_dict(v)))  # as stored in the job row
    assert d["encoder"] == "dlib" and len(d["values"]) == 128
    back = dict_to_msg(d, common_pb2.IdentityVector())
    assert back == v
    # and what json_format wrote before reads back the same
    assert (
        dict_to_msg(
            json_format.MessageToDict(v, preserving_proto_field_name=True), common_pb2.IdentityVector()
        )
        == v
    )


def test_empty_vectors_and_other_messages():
    assert msg_to_dict(common_pb2.IdentityVector()) == {}
    assert dict_to_msg({}, common_pb2.IdentityVector()) == common_pb2.IdentityVector()
    ref = common_pb2.ImageRef(uri="s3://bucket/a.png")
    assert dict_to_msg(msg_to_dict(ref), common_pb2.ImageRef()) == ref
