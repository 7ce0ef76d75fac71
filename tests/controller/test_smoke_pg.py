def test_signup(store):
    u, k = store.signup("x@example.com", "password123")
    assert store.user_for_api_key(k) == u
