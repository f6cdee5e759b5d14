"""The DeathStarBench social network as functions.

`services` holds the application: one plain function per service, each taking an
`App` (the app's Redis and a way to call other services) and plain arguments.
`wiring` connects them in one of three ways: `local` (direct Python calls),
`http` (each service a registered function; calls go through the gateway's
POST /v1/tasks?wait=) and `nested` (calls through captured RemoteFunctions, over
the worker's link). `seed` fills the app's Redis with a social graph and posts;
`load` is an open-loop load generator. See README.md next to this file.
"""
