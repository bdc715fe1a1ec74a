"""Accounts: signing up logs the new user in, so they can submit at once."""


def test_signup_logs_in(client, db):
    response = client.post("/accounts/signup/", {"username": "newbie", "password1": "a-long-test-password",
                                                 "password2": "a-long-test-password"})
    assert response.status_code == 302
    assert client.get("/submissions/new/").status_code == 200
