"""The HYPE study web app (Flask; served by waitress, see :mod:`genlab.human.server`).

Pages for raters:

* ``GET /``: the welcome page (a returning rater's cookie leads back to their page);
  ``POST /start`` makes an anonymous rater and sends them to ``/r/<id>``.
* ``GET /r/<id>``: the rater's current image with Real/Fake buttons (qualification first,
  then the study; HYPE-time flashes the image for the staircase's exposure, then masks it).
  The id in the URL (and a cookie) is all a rater needs to resume, after a server restart too.
* ``GET /r/<id>/image/<idx>``: the PNG of the current trial only. URLs name the rater and
  the trial number, never the image or its source; real and fake pages differ in nothing
  else.
* ``POST /r/<id>/answer``: ``idx`` (the trial answered), ``answer`` (``real``/``fake``),
  optional ``response_ms``/``shown_ms``; a form (redirects to the next image) or JSON
  (answers JSON). Every request is validated; a rejected one gets a 4xx with a message and
  stores nothing (:class:`genlab.human.db.RequestError`).
* ``GET /api/r/<id>``: the rater's state as JSON; ``POST /api/start``: a new rater as
  JSON (``{"simulated": true}`` needs the admin token: scripted raters are labelled).

Admin (token printed at start-up; ``?token=`` or header ``X-Admin-Token``): ``/admin``
(progress and running scores), ``/admin/export.csv`` (every judgement),
``/admin/api/truth/<id>/<idx>`` (the answer key, for simulated raters only).
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path

from flask import Flask, Response, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from genlab.human import db as hdb

RID = re.compile(r"^[A-Za-z0-9_-]{16}$")
COOKIE = "genlab_hype_rater"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def create_app(db_path: str | Path) -> Flask:
    """The app serving the study in ``db_path`` (which must hold one)."""
    study = hdb.Study.load(db_path)
    app = Flask("genlab.human", template_folder=str(Path(__file__).parent / "templates"))
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    app.config["HYPE_STUDY"] = study

    def conn():
        if "conn" not in g:
            g.conn = hdb.connect(study.path)
        return g.conn

    @app.teardown_appcontext
    def _close(_exc):
        c = g.pop("conn", None)
        if c is not None:
            c.close()

    @app.before_request
    def _nonce():
        g.nonce = secrets.token_urlsafe(12)

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = (f"default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                                                   f"script-src 'nonce-{g.get('nonce', 'x')}'; form-action 'self'; "
                                                   "connect-src 'self'; base-uri 'none'")
        return resp

    def wants_json() -> bool:
        return request.is_json or request.path.startswith(("/api/", "/admin/api/"))

    @app.errorhandler(hdb.RequestError)
    def _request_error(err: hdb.RequestError):
        if wants_json():
            return jsonify(error=err.message), err.status
        return render_template("message.html", title=f"Error {err.status}", message=err.message,
                               back=g.get("rid"), nonce=g.nonce), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        msg = {404: "no such page", 405: f"method {request.method} is not allowed here",
               413: "request body too large"}.get(err.code or 0, err.description)
        if wants_json():
            return jsonify(error=msg), err.code
        return render_template("message.html", title=f"Error {err.code}", message=msg, back=None,
                               nonce=g.get("nonce", "")), err.code

    def check_rid(rid: str) -> str:
        if not RID.match(rid):
            raise hdb.RequestError(404, "unknown rater id; open the study's start page to get a new one")
        g.rid = rid
        return rid

    def check_admin() -> None:
        token = request.headers.get("X-Admin-Token") or request.args.get("token") or ""
        if not hmac.compare_digest(token.encode(), study.admin_token.encode()):
            raise hdb.RequestError(403, "admin pages need the admin token printed when the server started "
                                        "(?token=... or header X-Admin-Token)")

    # --- raters -----------------------------------------------------------------------------

    @app.get("/")
    def index():
        rid = request.cookies.get(COOKIE, "")
        if RID.match(rid):
            try:
                hdb.state(conn(), study, rid)
                return redirect(url_for("rater_page", rid=rid), code=303)
            except hdb.RequestError:
                pass
        c = study.config
        return render_template("index.html", c=c, models=len(study.models), total=study.n_trials,
                               nonce=g.nonce)

    @app.post("/start")
    def start():
        rid = hdb.create_rater(conn(), study, simulated=False)
        resp = redirect(url_for("rater_page", rid=rid), code=303)
        resp.set_cookie(COOKIE, rid, max_age=90 * 24 * 3600, httponly=True, samesite="Lax")
        return resp

    @app.get("/r/<rid>")
    def rater_page(rid: str):
        st = hdb.state(conn(), study, check_rid(rid))
        c = study.config
        if st["state"] == "failed":
            return render_template("message.html", title="Thank you",
                                   message="You did not reach the qualification threshold "
                                           f"({c.qual_threshold:.0%} right on real and on fake images), so the "
                                           "study ends here. Thank you for your time.", back=None, nonce=g.nonce)
        if st["state"] == "done":
            return render_template("message.html", title="Thank you",
                                   message=f"You judged all {st['total']} images; every answer is saved. "
                                           "You may close this page.", back=None, nonce=g.nonce)
        timed = st["exposure_ms"] is not None
        return render_template("trial.html", st=st, c=c, rid=rid, timed=timed,
                               image_url=url_for("image", rid=rid, idx=st["idx"]), nonce=g.nonce)

    @app.get("/r/<rid>/image/<int:idx>")
    def image(rid: str, idx: int):
        png = hdb.current_png(conn(), check_rid(rid), idx)
        return Response(png, mimetype="image/png")

    @app.post("/r/<rid>/answer")
    def answer(rid: str):
        check_rid(rid)
        if request.is_json:
            body = request.get_json(silent=True)
            if body is None:
                raise hdb.RequestError(400, "the body is not valid JSON")
        elif request.mimetype in FORM_TYPES:
            if any(len(v) > 1 for _, v in request.form.lists()):
                raise hdb.RequestError(400, "each form field may be given once")
            body = request.form.to_dict()
        else:
            raise hdb.RequestError(415, "send the answer as JSON or as a form (fields idx and answer)")
        idx, ans, response_ms, shown_ms = hdb.parse_answer(body)
        res = hdb.answer(conn(), study, rid, idx, ans, response_ms=response_ms, shown_ms=shown_ms)
        if request.is_json:
            return jsonify(res)
        return redirect(url_for("rater_page", rid=rid), code=303)

    @app.post("/api/start")
    def api_start():
        body = request.get_json(silent=True) if request.is_json else {}
        if body is None or not isinstance(body, dict) or set(body) - {"simulated"}:
            raise hdb.RequestError(400, 'the body must be empty or {"simulated": true|false}')
        simulated = body.get("simulated", False)
        if not isinstance(simulated, bool):
            raise hdb.RequestError(400, "simulated must be true or false")
        if simulated:
            check_admin()
        rid = hdb.create_rater(conn(), study, simulated=simulated)
        return jsonify(rater=rid, url=url_for("rater_page", rid=rid)), 201

    @app.get("/api/r/<rid>")
    def api_state(rid: str):
        st = hdb.state(conn(), study, check_rid(rid))
        if st["state"] in ("qualification", "study"):
            st["image_url"] = url_for("image", rid=rid, idx=st["idx"])
        return jsonify(st)

    # --- admin ------------------------------------------------------------------------------

    @app.get("/admin")
    def admin():
        check_admin()
        from genlab.human.results import scores

        res = scores(study, n_boot=1000)
        prog = hdb.progress(conn())
        return render_template("admin.html", study=study, c=study.config, res=res, prog=prog,
                               token=request.args.get("token", ""), nonce=g.nonce)

    @app.get("/admin/export.csv")
    def admin_export():
        check_admin()
        from genlab.human.results import export_csv

        return Response(export_csv(study.path), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=hype-judgements.csv"})

    @app.get("/admin/api/truth/<rid>/<int:idx>")
    def admin_truth(rid: str, idx: int):
        check_admin()
        return jsonify(truth=hdb.truth(conn(), check_rid(rid), idx))

    @app.get("/healthz")
    def healthz():
        return jsonify(ok=True, protocol=study.config.protocol, models=len(study.models))

    return app
