# spore deploy hello-py --runtime python --file examples/hello.py && spore invoke hello-py
def handler(event, context):
    return {"message": "hello " + str(event.get("name", "world"))}
