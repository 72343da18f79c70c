"""The project IDE: a JupyterLab process per open project, reached only through the gateway.

``lab`` runs one Lab, ``manager`` keeps one per project and stops idle ones, ``credentials``
turns the session token of ``ProjectService.Open`` into a browser cookie, and ``gateway`` +
``proxy`` serve ``/ide/<project_id>/`` on the REST port, adding the Lab's own token on the way.
"""
