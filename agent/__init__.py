"""convocate-agent: one host's sessions on the local Docker Engine, served over gRPC.

The core (:mod:`.manager`, :mod:`.store`, :mod:`.viewers`, :mod:`.attach_manager`,
:mod:`.events`, :mod:`.event_hub`) works on :mod:`common.domain` types; the gRPC services
(:mod:`.sessions_service`, :mod:`.attach_service`) and the status emitter convert at the
edge. :mod:`.public` is the only module the shell's set-up code may import.
"""
