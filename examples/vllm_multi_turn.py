"""ms-swift's chatglm3 example on the embedded model: the same code serves any model type and its template."""

from swiftcli import ModelType, get_default_template_type, get_template, get_vllm_engine, inference_vllm

if __name__ == "__main__":  # vLLM spawns worker processes
    model_type = ModelType.smollm2_135m_instruct
    llm_engine = get_vllm_engine(model_type)
    template_type = get_default_template_type(model_type)
    template = get_template(template_type, llm_engine.hf_tokenizer)
    llm_engine.generation_config.max_new_tokens = 256
    llm_engine.generation_config.temperature = 0  # greedy, so the answer below is reproducible

    request_list = [{'query': 'What is the capital of France?'}, {'query': 'Name a primary colour.'}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    for request, resp in zip(request_list, resp_list):
        print(f"query: {request['query']}")
        print(f"response: {resp['response']}")

    history = resp_list[0]['history']
    request_list = [{'query': 'And its population?', 'history': history}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    print(f"response: {resp_list[0]['response']}")
    print(f"history: {resp_list[0]['history']}")
