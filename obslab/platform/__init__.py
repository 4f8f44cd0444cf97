"""What every component of the lab is built on, whatever it is (a banking service, an ML
service, the IIS mock, the alert-receiver, the fault-injector):

- :mod:`.app`: the Flask app factory with the operational routes (``/health``, ``/ready``,
  ``/metrics``), the service context, body limits;
- :mod:`.db`: the database layer (SQLite natively, MySQL/MariaDB in compose);
- :mod:`.http`: the peer client with its circuit breaker (:mod:`.breaker`);
- :mod:`.errors`: JSON errors; :mod:`.identity`: service-to-service trust; :mod:`.control`: the
  control plane's token; :mod:`.clock`, :mod:`.ids`: timestamps and identifiers;
- :mod:`.serving`: the index from a component's name to its code, and how it is served.
"""
